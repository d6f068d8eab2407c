// Package boot runs the product the way an EC2 instance runs it, and checks
// what only that shows: a Debian 12 root file system booted by systemd-nspawn
// with systemd as its PID 1, cloud-init seeded (NoCloud) with exactly the
// user-data `spot-agent bootstrap` puts into its launch template, the .deb
// from `make package` downloaded over https and installed by that user-data,
// and the agent reaching instance metadata at 169.254.169.254 from inside its
// sandbox. The peers live in a second network namespace joined to the
// instance's by a veth pair: amazon-ec2-metadata-mock (IMDSv2 only) on
// 169.254.169.254:80, moto server, and an https server with a throwaway CA.
//
// The test is behind the build tag boot (`make boot`, as root): it needs
// root, systemd-nspawn, mmdebstrap and the Debian mirror of the machine's apt
// sources, and it takes minutes. The root file system is cached under
// /var/cache/spot-agent-boot, keyed by what it is built from.
package boot
