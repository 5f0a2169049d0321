"""Helpers for the persistence tests: a strict comparator, a random workload, child scripts."""
