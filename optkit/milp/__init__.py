"""Natural-language decision problems to MILP models (spec milp).

Text -> variables -> classified objective and constraints -> a typed IR (:mod:`optkit.milp.ir`) -> rows with
derived big-M (:mod:`optkit.milp.build`) -> HiGHS through highspy or Pyomo (:mod:`optkit.milp.solve`) -> self-check
diagnostics (:mod:`optkit.milp.selfcheck`). :func:`formulate` runs offline by default (a shipped CRF tagger and
rules, :mod:`optkit.milp.extract`) and takes any LLM backend (:mod:`optkit.milp.llm`), which is only ever asked for
JSON. :func:`evaluate` scores formulators on NL4Opt records; :mod:`optkit.milp.layers` (torch extra) holds the
perturbed-optimizer layer.

``import optkit.milp`` imports neither pyomo, highspy nor torch.
"""

from . import _register  # noqa: F401  (registers the solvers for the contract tests)
from .build import LinearForm, to_linear_form
from .datasets import default_data_dir, load_nl4opt_generation, load_nl4opt_ner
from .evaluate import EvaluationReport, component_scores, evaluate, load_references
from .formulate import FormulationResult, FormulationState, Formulator, formulate
from .ir import MILPModel, Objective, Variable
from .llm import CallableBackend, LLMBackend, OpenAICompatibleBackend
from .numbers import parse_number
from .scoring import ner_score, nl4opt_score
from .selfcheck import Diagnostic, diagnose
from .solve import MILPResult, solve, to_highspy, to_pyomo

__all__ = [
    "formulate", "Formulator", "FormulationState", "FormulationResult", "Diagnostic", "diagnose",
    "evaluate", "EvaluationReport", "component_scores", "load_references",
    "MILPModel", "Variable", "Objective", "LinearForm", "to_linear_form",
    "solve", "MILPResult", "to_highspy", "to_pyomo",
    "LLMBackend", "CallableBackend", "OpenAICompatibleBackend",
    "parse_number", "nl4opt_score", "ner_score", "default_data_dir", "load_nl4opt_generation", "load_nl4opt_ner",
]
