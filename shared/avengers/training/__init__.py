"""Learning from outcome data: outcome tables (``training.data``), the shared research splits
(``training.datasets``), collecting outcomes from live models (``training.collect``), evaluation,
sweeps and tuning (``training.evaluation``), choosing alpha for a budget
(``training.calibration``), training on Parquet in chunks (``training.chunked``), the shipped
router and data (``training.bundled``) and plots (``training.plots``)."""
