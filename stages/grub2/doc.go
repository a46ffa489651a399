// Package grub2 is org.osbuild.grub2: it configures GRUB 2 to boot the
// tree, taking osbuild's options but writing Debian's layout.
//
// osbuild writes Fedora's /boot/grub2/grub.cfg, which boots Boot Loader
// Specification entries (blscfg). Debian has none, so this stage writes
// /boot/grub/grub.cfg with menu entries of its own, laid out as Debian's
// grub-mkconfig lays them out: one entry for the newest kernel, then an
// "Advanced options" submenu with every kernel (and a recovery-mode entry
// each), newest first by Debian's version ordering. The kernels are the
// tree's /boot/vmlinuz-VERSION, each with its /boot/initrd.img-VERSION;
// a tree without one is an error. Each entry boots root=UUID=... (or
// LABEL=) ro plus kernel_opts, whose words are quoted where GRUB's parser
// would otherwise act on them (';', '$', quotes), so the kernel gets them
// as written. grub.cfg is 0444, as Debian's grub-mkconfig leaves it.
//
// The boot filesystem: /boot is on the root filesystem unless bootfs or
// boot_fs_uuid names another one, mounted at /boot; GRUB searches for
// that filesystem (search --fs-uuid or --label) and finds the kernels at
// /boot/vmlinuz-* on the root filesystem, or /vmlinuz-* on a separate
// boot filesystem.
//
// The stage also writes /boot/grub/grubenv (osbuild's kernelopts and
// saved_entry; grub-reboot's next_entry works) and, unless write_defaults
// is false, /etc/default/grub with the same settings, so update-grub in
// the booted system makes an equivalent grub.cfg. With "legacy" (true is
// i386-pc) it copies the build root's GRUB modules,
// /usr/lib/grub/PLATFORM/*.mod, *.lst and efiemu*.o, into
// /boot/grub/PLATFORM/ and its unicode.pf2 into /boot/grub/fonts/: a
// core.img whose prefix is /boot/grub loads normal.mod, linux.mod and the
// rest from there. With "uefi", grub.cfg goes to
// /boot/efi/EFI/VENDOR/grub.cfg, or, with legacy too or uefi.unified, a
// short grub.cfg there hands over to /boot/grub/grub.cfg.
package grub2
