#!/usr/bin/env bash
# Builds the Debian package and checks it: `deploy/package.sh` -> target/debian/replguard_*.deb
#
# 1. cargo build --release; the man page, bash/zsh/fish completions (generated from the
#    command line definitions: `replguard generate ...`) and the unit with /usr/bin paths go to
#    target/package/.
# 2. cargo-deb assembles the package (metadata in Cargo.toml [package.metadata.deb];
#    maintainer scripts in deploy/debian/: a `replguard` system user in postinst; the service is
#    not enabled: configure first).
# 3. Checks: dpkg-deb --info/--contents list what must be there, lintian finds no error, the
#    package unpacks into a throw-away root with `dpkg --root`, and the unit installed there
#    passes `systemd-analyze verify`.
# Installs what it lacks (cargo-deb, lintian, systemd) first.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
missing=()
command -v lintian >/dev/null || missing+=(lintian)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v fakeroot >/dev/null || missing+=(fakeroot)
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release --locked
bin=target/release/replguard
out=target/package
rm -rf "$out" && mkdir -p "$out"
"$bin" generate man | gzip -9n > "$out/replguard.1.gz"
"$bin" generate bash > "$out/replguard.bash"
"$bin" generate zsh > "$out/_replguard"
"$bin" generate fish > "$out/replguard.fish"
sed 's|/usr/local/bin/replguard|/usr/bin/replguard|g' deploy/replguard.service > "$out/replguard.service"

cargo deb --no-build --no-dbgsym
deb="$(ls -t target/debian/replguard_*.deb | head -1)"
echo "==> $deb"

fail() { echo "package check failed: $*" >&2; exit 1; }
info="$(dpkg-deb --info "$deb")"
contents="$(dpkg-deb --contents "$deb")"
grep -q "Package: replguard" <<<"$info" || fail "no Package field"
grep -q "Depends:.*adduser" <<<"$info" || fail "does not depend on adduser"
for f in ./usr/bin/replguard ./etc/replguard/replguard.toml ./lib/systemd/system/replguard.service \
         ./usr/share/man/man1/replguard.1.gz ./usr/share/bash-completion/completions/replguard \
         ./usr/share/zsh/vendor-completions/_replguard \
         ./usr/share/fish/vendor_completions.d/replguard.fish ./usr/share/doc/replguard/copyright; do
  grep -q " $f\$" <<<"$contents" || fail "$f missing"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/replguard/replguard.toml \
  || fail "/etc/replguard/replguard.toml is not a conffile"
dpkg-deb --ctrl-tarfile "$deb" | tar -tf - | grep -q '^./postinst$' || fail "no postinst"
echo "==> contents and control files as expected"

# lintian runs as a normal user where it can; errors fail, warnings are shown.
lintian --fail-on error --suppress-tags-from-file /dev/null "$deb" || fail "lintian found errors"
echo "==> lintian: no error"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
# Unpacked only: configuring would run postinst (adduser) against this machine.
dpkg --root="$root" --force-not-root --log=/dev/null --unpack "$deb" >/dev/null
"$root/usr/bin/replguard" --version
sed "s|/usr/bin/replguard|$root/usr/bin/replguard|g" "$root/lib/systemd/system/replguard.service" \
  > "$root/replguard.service"
systemd-analyze verify "$root/replguard.service"
sh -n deploy/debian/postinst && sh -n deploy/debian/postrm && sh -n deploy/debian/prerm
echo "==> installed into a throw-away root; the unit verifies"
echo "==> package OK: $deb"
