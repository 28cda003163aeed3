#!/bin/sh
# Runs as PID 1 on the overlay (host / read-only + tmpfs upper). Mounts the usual
# pseudo filesystems, exposes the guest kernel's modules, runs the test script named
# by otscript= on the kernel command line, reports, powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
KVER=$(cat /run/ot/kver)
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/tmp 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
# guest kernel modules: the extracted package (with modules.dep made by depmod on the host)
mkdir -p /lib/modules/$KVER
mount --bind /var/cache/origin-tracer/kernels/x/linux-image-$KVER/lib/modules/$KVER /lib/modules/$KVER
ip link set lo up
hostname otvm
# results share (9p, writable) if present
mkdir -p /run/ot/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /run/ot/out 2>/dev/null || echo "stage2: no out share"
SCRIPT=$(sed -n 's/.*otscript=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "OT-VM-BOOTED kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
if [ -n "$SCRIPT" ] && [ -f "$SCRIPT" ]; then
  ( cd /tmp && sh "$SCRIPT" ) > /run/ot/log 2>&1
  rc=$?
  cat /run/ot/log
else
  echo "stage2: no script ($SCRIPT)"; rc=99
fi
cp /run/ot/log /run/ot/out/log 2>/dev/null; echo $rc > /run/ot/out/rc 2>/dev/null
echo "OT-VM-RC=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
umount /run/ot/out 2>/dev/null
/var/cache/origin-tracer/kernels/x/busybox-static/bin/busybox poweroff -f 2>/dev/null || echo o > /proc/sysrq-trigger
sleep 5
