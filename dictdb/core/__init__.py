"""The reference's ``dictdb.core`` package path: re-exports at its module paths.

`table` (`Table`), `condition` (`PredicateExpr`, `Condition`, `And`, `Or`, `Not`), `field`
(`Field`), `types` (`Record`, `Schema`). The implementations are `dictdb.table`,
`dictdb.query` and `dictdb.schema`.
"""
