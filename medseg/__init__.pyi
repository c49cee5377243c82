# What IDEs and type checkers see of ``import medseg``: the sub-packages it reaches on first use (PEP 562).
from medseg import cli as cli
from medseg import data as data
from medseg import evaluation as evaluation
from medseg import inference as inference
from medseg import interop as interop
from medseg import io as io
from medseg import losses as losses
from medseg import models as models
from medseg import outputs as outputs
from medseg import preprocessing as preprocessing
from medseg import runs as runs
from medseg import training as training
from medseg import utils as utils

__version__: str
SUBPACKAGES: tuple[str, ...]
__all__: list[str]
