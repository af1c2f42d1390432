"""The context tracer: the CUPTI subscriber (``recorder``), reading its timeline in words
(``timeline``), and whether the installed CUPTI matches torch's (``cupti_match``)."""
