// SPDX-License-Identifier: Apache-2.0

package nfnl

import (
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// The generation stays while nothing changes (a dump changes nothing) and
// moves at a committed transaction, on the running kernel.
func TestGeneration(t *testing.T) {
	c := open(t)
	g0, err := c.Generation()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dump(unix.NFT_MSG_GETTABLE, unix.NFPROTO_INET, nil); err != nil {
		t.Fatal(err)
	}
	if g1, err := c.Generation(); err != nil || g1 != g0 {
		t.Fatalf("generation after a dump: %d, %v; want %d", g1, err, g0)
	}
	if _, err := c.Transact(tableChainRules(t, 1, "c")); err != nil {
		t.Fatal(err)
	}
	if g2, err := c.Generation(); err != nil || g2 == g0 {
		t.Fatalf("generation after a transaction: %d, %v; want other than %d", g2, err, g0)
	}
}

func TestParseGeneration(t *testing.T) {
	if g, err := ParseGeneration(inet(netlink.Attribute{Type: unix.NFTA_GEN_ID, Data: []byte{0, 0, 1, 2}})); err != nil || g != 258 {
		t.Errorf("ParseGeneration: %d, %v; want 258", g, err)
	}
	if _, err := ParseGeneration(inet()); err == nil {
		t.Error("a message without a generation id parsed")
	}
	if _, err := ParseGeneration([]byte{1}); err == nil {
		t.Error("a message shorter than its header parsed")
	}
}

// A kept socket (OpenKept) reads the generation again and again, each
// time as it is then, and holds no receive buffer between its reads.
func TestGenerationKept(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNetns(t)
	c, err := Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k, err := OpenKept(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for range 2 {
		want, err := c.Generation()
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.Generation()
		if err != nil || got != want {
			t.Fatalf("kept socket: generation %d, %v; want %d", got, err, want)
		}
		if k.buf != nil {
			t.Fatal("a kept socket holds a receive buffer between its reads")
		}
		if _, err := c.Transact(tableChainRules(t, 1, "c")); err != nil {
			t.Fatal(err)
		}
	}
}
