"""The extraction engine, without Ray: ``plan`` (what is extracted from which videos, into which shards) and
``shard`` (one shard file, each video streamed decode -> flow -> streams). The Ray driver that runs one task
per shard and publishes the version is ``jobs.extraction.driver``."""

from manifests.extraction.plan import ExtractConfig, ShardPlan, VideoTask, group_name, plan_shards
from manifests.extraction.shard import (
    Rejected,
    WindowFlow,
    build_shard,
    flow_stage,
    read_finished,
    source_chunks,
    stream_video,
    streams_of,
)

__all__ = [
    "ExtractConfig",
    "ShardPlan",
    "VideoTask",
    "group_name",
    "plan_shards",
    "Rejected",
    "WindowFlow",
    "build_shard",
    "flow_stage",
    "read_finished",
    "source_chunks",
    "stream_video",
    "streams_of",
]
