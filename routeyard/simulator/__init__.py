"""Simulated LLM backends (OpenAI and Anthropic wire formats) for tests, demos and benchmarks."""

from routeyard.simulator.app import SimulatorApp, build_simulator_app
from routeyard.simulator.latency import LatencyModel
from routeyard.simulator.profiles import ModelProfile, SimulatorConfig, demo_config
from routeyard.simulator.replay import ReplayIndex

__all__ = [
    "LatencyModel",
    "ModelProfile",
    "ReplayIndex",
    "SimulatorApp",
    "SimulatorConfig",
    "build_simulator_app",
    "demo_config",
]
