"""A DICOM node: a Storage SCP that measures what it receives and returns SR, GSPS and SC.

Modules (pynetdicom is imported lazily, ``pip install cervisag-edge[node]``):

- :mod:`.config`: :class:`~.config.NodeConfig` from a TOML file plus command-line overrides;
- :mod:`.spool`: the fsync'd on-disk spool (incoming, results, delivery journal, dead letters);
- :mod:`.scp`: association policy and the C-ECHO / C-STORE handlers;
- :mod:`.worker`: measuring and writing the result objects;
- :mod:`.sender`: C-STORE SCU to the destinations, with retries and backoff;
- :mod:`.health`: the status file behind ``cervisag serve --status``;
- :mod:`.logs`: the one-JSON-object-per-line log events;
- :mod:`.server`: :class:`~.server.Node`, which ties them together (start, resume, drain).

See ``docs/node.md`` and ``docs/conformance.md``.
"""
from __future__ import annotations
