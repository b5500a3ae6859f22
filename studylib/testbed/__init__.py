"""The testbed: ShapesWorld scenes and its six benchmark analogues, conversation data, the toy MLLMs and how their teachers are trained."""
