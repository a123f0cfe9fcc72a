"""Teacher games, episode recording, and the Gymnasium envs on the world model.

Importing this package registers the Gymnasium ids (Gymnasium 1.x has no plugin
auto-registration), so after `pip install` this works with no other step:

    import gymnasium as gym
    env = gym.make("envs:EchoInfinity/Teacher-v0")   # the "envs:" prefix imports envs first
    env = gym.make("envs:EchoInfinity/World-v0", checkpoint="checkpoints/tiny")
    vec = gym.make_vec("EchoInfinity/World-v0", num_envs=8, vectorization_mode="vector_entry_point")

The two share their spaces (64x64 RGB frames, the six teacher actions) and
truncate after 1000 steps. `EchoInfinity/Crafter-v0` is the Crafter game
(`envs.crafter`: 64x64 frames, Crafter's 17 actions), for recording and as the
real game beside a Crafter checkpoint.
"""
from gymnasium.envs.registration import register, registry

TEACHER_ID = "EchoInfinity/Teacher-v0"
WORLD_ID = "EchoInfinity/World-v0"
CRAFTER_ID = "EchoInfinity/Crafter-v0"

if TEACHER_ID not in registry:
    register(id=TEACHER_ID, entry_point="envs.teacher:TeacherEnv", max_episode_steps=1000)
if WORLD_ID not in registry:
    register(id=WORLD_ID, entry_point="envs.world_env:WorldEnv",
             vector_entry_point="envs.world_vector:WorldVectorEnv", max_episode_steps=1000)
if CRAFTER_ID not in registry:   # needs the `crafter` package (the `crafter` extra); its own 10,000-step limit
    register(id=CRAFTER_ID, entry_point="envs.crafter:CrafterEnv")
