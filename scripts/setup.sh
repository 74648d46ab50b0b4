#!/usr/bin/env bash
# Set up robot-stack on a fresh Debian/Ubuntu machine: system libraries for offscreen
# rendering, a virtual environment, the CPU build of PyTorch, then the project.
# Idempotent: re-running only does what is missing.
#
#   scripts/setup.sh [EXTRAS]     EXTRAS defaults to "dev" (e.g. "dev,ros,franka"); with "ros" it
#                                 also builds ros_ws (scripts/build_ros.sh). The hardware extras:
#                                 franka (franky-control, pylibfranka, franky-sim), realsense,
#                                 spacemouse. console: the actor's live web page.
#
# Environment: PYTHON (interpreter for the venv, default python3), VENV (default .venv).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="${1:-dev}"
python="${PYTHON:-python3}"
venv="${VENV:-.venv}"
torch_version="2.13.0"

say() { printf '[setup] %s\n' "$*"; }

# 1. Debian packages. MuJoCo renders offscreen through EGL; on machines without a GPU
#    Mesa's software EGL does the work. pyrealsense2 talks to cameras through libusb;
#    pyspacemouse opens the device through hidapi. The tests drive the live page of the
#    operator console in the system's headless chromium (playwright never downloads one).
apt_packages=(libegl1 libegl-mesa0 libgl1-mesa-dri libglx-mesa0 libgles2)
case ",$extras," in *,dev,*) apt_packages+=(chromium) ;; esac
case ",$extras," in *,realsense,*) apt_packages+=(libusb-1.0-0) ;; esac
case ",$extras," in *,spacemouse,*) apt_packages+=(libhidapi-hidraw0 libhidapi-libusb0) ;; esac
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 2. The virtual environment.
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv with $($python --version 2>&1)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip)

# 3. PyTorch first, pinned: an unpinned "torch" requirement would pull the CUDA build
#    (several GB); 2.13.0 resolves to the CPU wheel on these machines.
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$torch_version') else 1)" 2>/dev/null; then
  say "installing torch==$torch_version"
  "${pip[@]}" install -q "torch==$torch_version"
fi

# 4. The project (editable) with the requested extras. A stamp of pyproject.toml skips
#    the resolver when nothing changed.
stamp="$venv/.robot-stack-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing robot-stack[$extras]"
  "${pip[@]}" install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi

# 5. The ROS 2 workspace (interfaces and nodes), when ROS 2 came with the "ros" extra.
case ",$extras," in
  *,ros,*) VENV="$venv" scripts/build_ros.sh ;;
esac

# 6. Offscreen rendering works (catches a missing EGL library now, not mid-session).
MUJOCO_GL="${MUJOCO_GL:-egl}" "$venv/bin/python" - <<'PY'
import mujoco
model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
with mujoco.Renderer(model, 16, 16) as renderer:
    renderer.update_scene(mujoco.MjData(model))
    renderer.render()
PY
say "ready: $venv ($("$venv/bin/python" --version 2>&1), torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'))"
