"""Deliberately broken cores, to prove the simulator and checker can fail.

Each mutant is a ``Replica`` subclass with one bug planted. ``causalkv sim
--mutant NAME`` runs seeds against it; a simulator that lets these pass would
prove nothing when the real core passes. ``tests/sim/test_mutants.py`` pins
seeds that catch each one.

* ``impatient-reads``: requests are served even when the client's token asks
  for versions this replica has not applied yet (no causal wait).
* ``forgetful-pushes``: a replica skips storing one pushed version in three
  but still advances its clock past it, so anti-entropy never repairs it.
* ``hasty-acks``: a write's reply does not wait for its persist batch to be
  durable, so a crash can lose an acknowledged write.
"""

from __future__ import annotations

from causalkv.core.base import TokenStatus
from causalkv.core.keystore import Version
from causalkv.core.replica import Replica
from causalkv.core.token import Token


class ImpatientReads(Replica):
    def _token_status(self, token: Token) -> TokenStatus:
        status = super()._token_status(token)
        return TokenStatus.SATISFIED if status is TokenStatus.UNMET else status


class ForgetfulPushes(Replica):
    def _apply_replicated(self, key: str, version: Version) -> bool:
        if version.seq % 3 == 0:
            return False
        return super()._apply_replicated(key, version)


class HastyAcks(Replica):
    def _step_persist_id(self) -> int:
        super()._step_persist_id()
        return 0


MUTANTS: dict[str, type[Replica]] = {
    "impatient-reads": ImpatientReads,
    "forgetful-pushes": ForgetfulPushes,
    "hasty-acks": HastyAcks,
}
