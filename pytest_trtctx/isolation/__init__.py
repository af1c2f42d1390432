"""Stage 3, CUDA-virgin processes: the scheduler's rules (``scheduler``), the real forks and
pipes (``forking``, ``channel``, ``proctree``, ``guard``), the worker side (``worker``,
``prebuild``, ``reruns``), collection in a child (``collection``, ``proxy``), warnings carried
up (``warning_wire``) and what the summary will import, imported early (``summary_imports``)."""
