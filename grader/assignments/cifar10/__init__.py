"""The CIFAR-10 PyTorch homework: its checks, rubric and notebook template."""
