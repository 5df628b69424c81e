"""Samplers for diffusion models (the loop is ours; schedules and step arithmetic are diffusers')."""
