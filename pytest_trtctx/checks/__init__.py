"""Stage 4, what a test is judged by: its outputs' checks (``outputs``) and the outcome classes
and record fields every later stage shares (``outcomes``)."""
