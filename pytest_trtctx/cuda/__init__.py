"""What the driver says, read without choosing an init order: the checked driver layer
(``driver``), the machine probed in a child (``probe``), the current context (``contexts``), and
who initialised CUDA in the pytest process (``init_watch``)."""
