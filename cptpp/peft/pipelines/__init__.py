"""Library pipelines of the PEFT methods, one module per run (``cptpp <method>`` calls them).

Each pipeline is ``run_<method>(cfg, out, resume=False) -> results`` with a config dataclass next to it;
:mod:`cptpp.peft.pipelines.stages` holds the run folder every one of them writes.
"""
