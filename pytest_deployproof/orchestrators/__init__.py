"""What runs a stack: the deploy target a stack's ``target:`` names (DEP-1 for Compose,
and for Docker Swarm).

The deployer, the checks and drift speak to a stack's orchestrator only through
:class:`~.base.Orchestrator`: apply what the stack's files and env file now say
and wait until it converged, observe each service, list the stack's current
containers, and say whether the host can take a deploy at all. Everything else
(the lock, the backup, the tag, the history, the rollback to the last good
version, the three verdicts) is the same for every target.
"""

from .base import Orchestrator
from .compose import ComposeOrchestrator
from .swarm import SwarmOrchestrator

__all__ = ["ComposeOrchestrator", "Orchestrator", "SwarmOrchestrator"]
