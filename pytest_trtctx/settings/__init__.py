"""Stage 1-2, what the user asked: options and ini keys (``options``), their precedence settled
once (``config``), each test's markers read once into a frozen plan (``plan``)."""
