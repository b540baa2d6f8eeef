# Not Python code: this file makes configs/ the package `ghostdet.configs` of the wheel (pyproject.toml maps it there
# with package-dir), so an installed ghostdet finds its Hydra configs with importlib.resources.files("ghostdet.configs")
# from any directory. configs/ stays the one copy, at the top of the checkout where users edit and read it.
