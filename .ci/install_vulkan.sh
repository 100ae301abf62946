#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) from Debian bookworm-backports (Mesa 25),
# libvulkan1 and vulkan-tools, so that LiteRT's WebGPU accelerator finds a Vulkan adapter on a
# machine without a GPU. Debian bookworm, as root. Idempotent: does nothing when a lavapipe of
# Mesa >= 25 is already installed.
#
# Afterwards:  export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-q -y -o Dpkg::Use-Pty=0 --no-install-recommends)

installed_mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
if [[ -n "$installed_mesa" ]] && dpkg --compare-versions "$installed_mesa" ge 25 \
   && dpkg-query -W libvulkan1 vulkan-tools >/dev/null 2>&1; then
    echo "install_vulkan: mesa-vulkan-drivers $installed_mesa already installed"
    exit 0
fi

. /etc/os-release
codename=${VERSION_CODENAME:-bookworm}
if [[ "$codename" != bookworm ]]; then
    echo "install_vulkan: warning: written for Debian bookworm, this is '$codename'" >&2
fi

# Add the backports suite unless a source already names it. Its mirror is the one the machine
# already uses for the main suite (first archive URI that is not the security archive).
if ! grep -rqs -- "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(grep -hsE '^[[:space:]]*(URIs:|deb[[:space:]])' /etc/apt/sources.list \
                 /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
             | grep -v -- '-security' | grep -oE '(https?|file)://[^[:space:]]+' | head -n 1 || true)
    if [[ -z "$mirror" ]]; then
        echo "install_vulkan: no Debian archive found in /etc/apt sources" >&2
        exit 1
    fi
    echo "deb ${mirror} ${codename}-backports main" > /etc/apt/sources.list.d/${codename}-backports.list
    echo "install_vulkan: added ${codename}-backports (${mirror})"
fi

apt-get -q update -o Dpkg::Use-Pty=0 >/dev/null
apt-get install "${APT_OPTS[@]}" -t "${codename}-backports" mesa-vulkan-drivers >/dev/null
apt-get install "${APT_OPTS[@]}" libvulkan1 vulkan-tools >/dev/null
echo "install_vulkan: mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)," \
     "libvulkan1 $(dpkg-query -W -f='${Version}' libvulkan1)"
if [[ ! -f /usr/share/vulkan/icd.d/lvp_icd.json ]]; then
    ls /usr/share/vulkan/icd.d/ >&2 || true
    echo "install_vulkan: /usr/share/vulkan/icd.d/lvp_icd.json is missing" >&2
    exit 1
fi
