"""The reference's observability package path; see `dictdb.obs.logging`."""
