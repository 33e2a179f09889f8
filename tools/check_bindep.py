# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check what the collection's bindep.txt selects on each platform family, as ansible-builder uses it.

ansible-builder installs the "compile" profile in the image's builder stage (where libvirt-python is
compiled) and the default profile in the final image (what runs). A missing or mistagged line shows
up here instead of in an image build, which needs a container engine.
"""

import sys

from bindep.depends import Depends

PLATFORMS = {
    "dpkg (Debian 12)": ["platform:dpkg", "platform:debian", "platform:debian-12"],
    "rpm (CentOS Stream 10)": ["platform:rpm", "platform:centos", "platform:centos-10"],
    "rpm (Fedora 41)": ["platform:rpm", "platform:fedora", "platform:fedora-41"],
}
# Per platform family: (builder stage, final image).
EXPECTED = {
    "dpkg": ({"gcc", "pkg-config", "libvirt-dev", "python3-dev", "libvirt0", "openssh-client"}, {"libvirt0", "openssh-client"}),
    "rpm": ({"gcc", "pkgconf-pkg-config", "libvirt-devel", "python3-devel", "libvirt-libs", "openssh-clients"},
            {"libvirt-libs", "openssh-clients"}),
}


def main(path):
    with open(path) as f:
        depends = Depends(f.read())
    problems = []
    for label, platform in PLATFORMS.items():
        family = platform[0].split(":")[1]
        for stage, profiles, want in (("builder", ["compile"], EXPECTED[family][0]), ("final", [], EXPECTED[family][1])):
            got = {rule[0] for rule in depends.active_rules(platform + profiles)}
            if got != want:
                problems.append("%s, %s stage: %s, expected %s" % (label, stage, sorted(got), sorted(want)))
            else:
                print("%s, %s stage: %s" % (label, stage, " ".join(sorted(got))))
    for problem in problems:
        print("error: bindep.txt selects " + problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
