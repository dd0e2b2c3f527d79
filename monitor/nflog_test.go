// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestNflogConfigMessage(t *testing.T) {
	m, err := nflogConfigMessage(7231)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Type != netlink.HeaderType(0x0401) || m.Header.Flags != netlink.Request|netlink.Acknowledge {
		t.Errorf("header type %#x flags %v, want 0x0401 (ULOG config), request|ack", m.Header.Type, m.Header.Flags)
	}
	// nfgenmsg: AF_UNSPEC, version 0, the group big-endian.
	if !bytes.Equal(m.Data[:4], []byte{0, 0, 0x1c, 0x3f}) {
		t.Fatalf("nfgenmsg % x, want 00 00 1c 3f", m.Data[:4])
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	ad.ByteOrder = binary.BigEndian
	got := map[uint16][]byte{}
	for ad.Next() {
		got[ad.Type()] = ad.Bytes()
	}
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	want := map[uint16][]byte{
		nfulaCfgCmd:     {nfulnlCfgCmdBind},
		nfulaCfgMode:    append(be32(nflogCopyRange), nfulnlCopyPacket, 0),
		nfulaCfgQthresh: be32(1),
		nfulaCfgTimeout: be32(nflogTimeout),
	}
	if len(got) != len(want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	for typ, w := range want {
		if !bytes.Equal(got[typ], w) {
			t.Errorf("attribute %d: % x, want % x", typ, got[typ], w)
		}
	}
}

func nflogPacketData(t *testing.T, prefix string, uid *uint32, payload []byte) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Bytes(1, []byte{0x08, 0x00, 3, 0}) // NFULA_PACKET_HDR: ETH_P_IP, hook OUTPUT
	ae.Bytes(nfulaPayload, payload)
	ae.String(nfulaPrefix, prefix)
	if uid != nil {
		ae.Uint32(nfulaUID, *uid)
		ae.Uint32(14, *uid) // NFULA_GID
	}
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(nfgenmsg(unix.AF_INET, 7231), attrs...)
}

func TestParseNflogPacket(t *testing.T) {
	payload := ipv4(protoTCP, "198.51.100.10", "198.51.100.1", 0, 0, l4ports(41000, 443))
	uid := uint32(1000)

	p, err := parseNflogPacket(nflogPacketData(t, "bypass:0123456789ab: ", &uid, payload))
	if err != nil {
		t.Fatal(err)
	}
	if p.Prefix != "bypass:0123456789ab: " || !p.HasUID || p.UID != 1000 || !bytes.Equal(p.Payload, payload) {
		t.Errorf("got %+v", p)
	}

	p, err = parseNflogPacket(nflogPacketData(t, "x: ", nil, payload))
	if err != nil {
		t.Fatal(err)
	}
	if p.HasUID {
		t.Errorf("without uid: %+v", p)
	}

	if _, err := parseNflogPacket([]byte{2, 0}); err == nil {
		t.Error("a message without nfgenmsg parsed")
	}
	if _, err := parseNflogPacket(append(nfgenmsg(unix.AF_INET, 1), 0xff, 0xff, 0x00)); err == nil {
		t.Error("garbled attributes parsed")
	}
}

// A socket stopped to drain can be revived until its reader gives up; then
// revive says it came too late. (An unbound netlink socket of the test's
// own namespace: no root needed, nothing arrives.)
func TestNflogSocketRevive(t *testing.T) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		t.Skipf("skipping: no netfilter netlink socket: %v", err)
	}
	s := &nflogSocket{conn: conn, done: make(chan struct{})}
	go s.read(func(nflogPacket, time.Time) {}, func() {}, func(err error) { t.Errorf("reading: %v", err) })

	s.stop(50 * time.Millisecond)
	if !s.revive() {
		t.Fatal("revive within the drain failed")
	}
	time.Sleep(150 * time.Millisecond)
	if s.stopped() {
		t.Fatal("the socket closed at the deadline of a stop that was revived")
	}
	s.stop(0)
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
		t.Fatal("the socket did not close after stop")
	}
	if s.revive() {
		t.Error("revive of a closed socket reported success")
	}
}
