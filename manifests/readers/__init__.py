"""Readers and exporters of a published shard dataset version: ``clips`` (a torch Dataset of clips),
``raydata`` (a Ray Data dataset), ``rawframes`` (an mmaction2 frame-folder export) and ``validation`` (the
validation subset carved from the training videos, shared by all of them)."""
