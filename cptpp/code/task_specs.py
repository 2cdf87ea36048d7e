"""The code tasks of the data mirror: folder, languages, split protocol, prompt separator (no torch import).

``cptpp.code.tasks`` documents the tasks and loads them; this table is separate so that the CLI
can list the task names without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    folder: str
    language: str                # language of the source code (for the CPG)
    has_train: bool
    single_line: bool            # the target is one line: generation stops at the first newline
    target_language: str | None  # programming language of the target (CodeBLEU), None for text
    separator: str               # between source and target for a decoder-only LM


TASKS: dict[str, TaskSpec] = {
    "translation": TaskSpec("codexglue_java_cs_translation", "java", True, True, "csharp", "\n// C#:\n"),
    "assert": TaskSpec("atlas_style_assert_generation", "java", True, True, "java", "\n// assert:\n"),
    "repair": TaskSpec("codexglue_bugs2fix_small", "java", False, True, "java", "\n// fixed:\n"),
    "summarization": TaskSpec("tlcodesum_java_summarization", "java", False, True, None, "\n// summary:\n"),
    "docstring": TaskSpec("python_code_docstring_v1", "python", False, True, None, "\n# docstring:\n"),
}
PROTOCOLS = {True: "official-splits", False: "valid-as-train"}
