"""Teacher games, episode recording, and (later) the Gymnasium envs on the world model.

Importing this package registers the Gymnasium ids (Gymnasium 1.x has no plugin
auto-registration), so after `pip install` this works with no other step:

    import gymnasium as gym
    env = gym.make("envs:EchoInfinity/Teacher-v0")   # the "envs:" prefix imports envs first
"""
from gymnasium.envs.registration import register, registry

TEACHER_ID = "EchoInfinity/Teacher-v0"

if TEACHER_ID not in registry:
    register(id=TEACHER_ID, entry_point="envs.teacher:TeacherEnv", max_episode_steps=1000)
