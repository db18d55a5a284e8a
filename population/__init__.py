"""Population runs and planning: the policy set over whole tables of people.

- `backends`: pick a decider (columnar, the default, or online) for a policy directory;
- `online`: the reference decider, one person at a time through the service core;
- `cli` (`subsidy-population`), `io` (Parquet, CSV and PostgreSQL sources and sinks), `job` (the
  per-chunk function), `cluster` (the same on Dask);
- `synthetic` and `data/`: the synthetic Zhejiang population and the figures it is drawn from;
- `planning/`: the indicator report, what-if comparisons, explanations and charts.
The columnar backend itself lives beside the durable-rules one, in service/engine/columnar/, with
the person and decision tables (`schema`) and person rows to and from requests (`persons`).
"""
