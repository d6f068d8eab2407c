package main_test

import (
	"debug/elf"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// The arm64 build is exercised, not only built: the on-instance binary for
// Graviton runs under qemu-user through one spot notice against AEMM and moto,
// as an x86 build does (identity, deregistration, exit before the deadline).
func TestTheArm64BuildHandlesASpotNoticeUnderQEMU(t *testing.T) {
	t.Parallel()
	qemu := testbed.Tool(t, "qemu-aarch64-static", "qemu-user-static")
	bin, err := testbed.BuildAgentFor("arm64", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	if ef.Machine != elf.EM_AARCH64 {
		t.Fatalf("%s is built for %s, want AArch64", bin, ef.Machine)
	}
	ef.Close()

	f := newFleet(t, "arm64", 1, 2*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, InstanceType: "c7g.large", NoNotice: true})
	a := testbed.StartAgentCommand(t, []string{qemu, bin}, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "3s")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	if !strings.Contains(a.Metrics(), `spot_agent_instance_info{availability_zone="us-east-1a",instance_id="`+f.id+`",instance_type="c7g.large",region="us-east-1"} 1`) {
		t.Fatalf("the identity is not what instance metadata says:\n%s", a.Metrics())
	}
	_, deadline := imds.Notice(t, "terminate", 20*time.Second)
	testbed.Eventually(t, 15*time.Second, "deregistration at moto", func() bool { return !f.registered(t) })
	exit, at := a.Wait(30 * time.Second)
	if exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
	if !at.Before(deadline) {
		t.Fatalf("exited at %s, not before the deadline %s", at.Format(time.RFC3339Nano), deadline.Format(time.RFC3339))
	}
	if !strings.Contains(a.Logs(), `msg=deregistered`) {
		t.Fatalf("no deregistration logged")
	}
}
