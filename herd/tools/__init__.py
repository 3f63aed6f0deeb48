"""Tools the model calls [P §4.3.5]: sandboxed Python, search over the bundled corpus, a calculator, and the
loop that runs them between generations (herd.tools.loop)."""

from herd.tools.calculator import CalculatorError, calculate
from herd.tools.functions import ast_match, check_arguments, check_call, check_definition
from herd.tools.loop import (
    DEFINITIONS,
    CallParseError,
    Toolbox,
    ToolResult,
    Trajectory,
    call_message,
    extract_call,
    model_generator,
    run_tool_loop,
    run_tool_loops,
    system_prompt,
)
from herd.tools.python import PythonTool
from herd.tools.search import SearchIndex, load_documents

__all__ = [
    "DEFINITIONS",
    "CalculatorError",
    "CallParseError",
    "PythonTool",
    "SearchIndex",
    "ToolResult",
    "Toolbox",
    "Trajectory",
    "ast_match",
    "calculate",
    "call_message",
    "check_arguments",
    "check_call",
    "check_definition",
    "extract_call",
    "load_documents",
    "model_generator",
    "run_tool_loop",
    "run_tool_loops",
    "system_prompt",
]
