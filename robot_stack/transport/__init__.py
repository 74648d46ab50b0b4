"""Actor <-> learner transport over ZeroMQ: typed, versioned messages (no pickle), loss-free
transition streaming with acknowledgements and an outbox, weight broadcasts in safetensors,
heartbeats and reconnection, and optional CurveZMQ authentication."""

from robot_stack.transport.actor_link import ActorLink, ActorLinkStatus, LinkRefused
from robot_stack.transport.learner_link import LearnerLink, PeerInfo, PortInUse, ReceivedBatch, Report
from robot_stack.transport.messages import (
    Ack,
    Event,
    Heartbeat,
    Hello,
    Refuse,
    Stats,
    TransitionBatch,
    WeightsChunk,
    Welcome,
    decode,
    encode,
)
from robot_stack.transport.outbox import Outbox, OutboxFull
from robot_stack.transport.security import KeyFileError, generate_keys, load_keys
from robot_stack.transport.weights_stream import (
    TrainingProgress,
    WeightsAssembler,
    WeightsUpdate,
    pack_weights,
    unpack_weights,
)
from robot_stack.transport.wire import PROTOCOL_VERSION, DecodeError, VersionMismatch, WireLimits

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "ActorLink",
    "ActorLinkStatus",
    "DecodeError",
    "Event",
    "Heartbeat",
    "Hello",
    "KeyFileError",
    "LearnerLink",
    "LinkRefused",
    "Outbox",
    "OutboxFull",
    "PeerInfo",
    "PortInUse",
    "ReceivedBatch",
    "Refuse",
    "Report",
    "Stats",
    "TrainingProgress",
    "TransitionBatch",
    "VersionMismatch",
    "WeightsAssembler",
    "WeightsChunk",
    "WeightsUpdate",
    "Welcome",
    "WireLimits",
    "decode",
    "encode",
    "generate_keys",
    "load_keys",
    "pack_weights",
    "unpack_weights",
]
