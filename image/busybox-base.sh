# Shared by the guest root file system and the busybox container image: busybox with a link
# per applet in /bin, and the minimal /etc/passwd and /etc/group. Sourced, not run.

# install_busybox_base ROOT BUSYBOX
install_busybox_base() {
  local root=$1 busybox=$2 applet
  mkdir -p "$root/bin" "$root/etc"
  install -m 0755 "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
}
