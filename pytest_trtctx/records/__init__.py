"""Stage 5, verdicts and records: known failures (``known_failures``), the summary
(``summary``), the JSON report (``report``), baselines (``baseline``) and the command line
(``cli``: ``diff``; ``merging``: ``merge``)."""
