"""The code tasks of the data mirror: folder, languages, split protocol, prompt separator, and the
settings of a code task run (no torch import).

``cptpp.code.tasks`` documents the tasks and loads them; this table and ``CodeTaskConfig`` are
separate so that the CLI can list the task names and read the defaults without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cptpp.config import ConfigError, check_choice, check_range


@dataclass(frozen=True)
class TaskSpec:
    folder: str
    language: str                # language of the source code (for the CPG)
    has_train: bool
    single_line: bool            # the target is one line: generation stops at the first newline
    target_language: str | None  # programming language of the target (CodeBLEU), None for text
    separator: str               # between source and target for a decoder-only LM
    instruction: str = ""        # the task in words, for a chat model prompted zero-shot (CodeTaskConfig.instruction)


TASKS: dict[str, TaskSpec] = {
    "translation": TaskSpec("codexglue_java_cs_translation", "java", True, True, "csharp", "\n// C#:\n",
                            "Translate this Java method to C#. Answer with the C# method only, on one line."),
    "assert": TaskSpec("atlas_style_assert_generation", "java", True, True, "java", "\n// assert:\n",
                       'Write the assert statement that replaces "<AssertPlaceHolder>" ; in this JUnit test. '
                       "Answer with that one Java statement only."),
    "repair": TaskSpec("codexglue_bugs2fix_small", "java", False, True, "java", "\n// fixed:\n",
                       "Fix the bug in this Java method. Answer with the fixed method only, on one line."),
    "summarization": TaskSpec("tlcodesum_java_summarization", "java", False, True, None, "\n// summary:\n",
                              "Summarize what this Java method does in one short sentence."),
    "docstring": TaskSpec("python_code_docstring_v1", "python", False, True, None, "\n# docstring:\n",
                          "Write the first line of the docstring of this Python function."),
}
PROTOCOLS = {True: "official-splits", False: "valid-as-train"}
FUSIONS = ("cross-attention", "as-released")  # Transducer Tuning's fusion layers (cptpp.code.transducer)


@dataclass
class CodeTaskConfig:
    task: str = field(default="translation", metadata={"help": "code task", "choices": tuple(TASKS)})
    max_source_tokens: int = field(default=400, metadata={  # `cptpp code-tune --max-source` reads it here
        "help": "source tokens per pair"})
    max_target_tokens: int = field(default=128, metadata={"help": "target tokens per pair"})
    drop_long: bool = field(default=True, metadata={
        "help": "keep only pairs that fit the limits (else truncate them)"})
    train_size: int = field(default=0, metadata={"help": "seeded sample of training pairs (0: all, after drop_long)"})
    valid_size: int = field(default=0, metadata={"help": "seeded sample of validation pairs (0: all)"})
    test_size: int = field(default=0, metadata={"help": "seeded sample of test pairs (0: all)"})
    batch_size: int = field(default=8, metadata={"help": "training pairs per batch"})
    eval_batch_size: int = field(default=8, metadata={"help": "evaluation pairs per batch"})
    separator: str | None = field(default=None, metadata={
        "help": "between source and target for a decoder-only LM", "default": "the task's own"})
    instruction: bool = field(default=False, metadata={
        "help": "decoder-only chat model: the prompt is the tokenizer's chat template around the task's instruction "
                "and the source (zero-shot prompting); the answer's code block is read as one line"})
    valid_generate: bool = field(default=False, metadata={
        "help": "validate by greedy decoding (BLEU) instead of teacher-forced token accuracy"})
    seed: int = field(default=0, metadata={"help": "seed of the data samples"})

    def __post_init__(self):
        check_choice("task", self.task, tuple(TASKS))
        if self.instruction and self.separator is not None:
            raise ConfigError("instruction=True prompts through the chat template; a separator is not used then "
                              f"(got separator={self.separator!r})")
        for name in ("max_source_tokens", "max_target_tokens", "batch_size", "eval_batch_size"):
            check_range(name, getattr(self, name), 1)
        for name in ("train_size", "valid_size", "test_size"):
            check_range(name, getattr(self, name), 0)
