"""`python -m robot_stack ...` is the `robot-stack` command."""

from robot_stack.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
