"""The conv specs engines are built for: one spec (``spec``), the matrix file (``matrix``),
generated specs (``explore``) and the on-disk engine cache (``cache``)."""
