"""Natural-language decision problems to MILP models (spec milp) -- WORK IN PROGRESS (branch milp-wip).

Built so far: the typed IR (:mod:`optkit.milp.ir`), compilation with derived big-M
(:mod:`optkit.milp.build`), HiGHS solving through highspy or Pyomo (:mod:`optkit.milp.solve`), the strict
number parser, NL4Opt loaders and scorers. ``import optkit.milp`` imports neither pyomo, highspy nor torch.
"""

from .build import LinearForm, to_linear_form
from .datasets import default_data_dir, load_nl4opt_generation, load_nl4opt_ner
from .evaluate import evaluate
from .formulate import FormulationResult, formulate
from .ir import MILPModel, Objective, Variable
from .numbers import parse_number
from .scoring import ner_score, nl4opt_score
from .solve import MILPResult, solve, to_highspy, to_pyomo

__all__ = ["formulate", "FormulationResult", "evaluate", "MILPModel", "Variable", "Objective", "LinearForm", "to_linear_form", "solve", "MILPResult", "to_highspy",
           "to_pyomo", "parse_number", "nl4opt_score", "ner_score", "default_data_dir", "load_nl4opt_generation",
           "load_nl4opt_ner"]
