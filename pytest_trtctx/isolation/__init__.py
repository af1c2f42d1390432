"""Stage 3, CUDA-virgin processes: the scheduler's rules (``scheduler``), the real forks and
pipes (``forking``, ``channel``, ``proctree``, ``guard``), the worker side (``worker``,
``prebuild``, ``reruns``), collection in a child (``collection``, ``proxy``) and warnings carried
up (``warning_wire``)."""
