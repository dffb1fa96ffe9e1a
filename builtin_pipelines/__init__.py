"""Pipelines that ship with pipevisor."""
