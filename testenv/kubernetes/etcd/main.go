// plimsoll-etcd: an etcd 3.5 server for the test control plane, built from
// the go.etcd.io/etcd/server/v3/embed package vendored in the Kubernetes
// v1.32.13 tree (the API server runs degraded on bookworm's etcd 3.4).
//
// Flags are the few the test environment uses, named as etcd names them.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		log.Fatalf("bad URL %q: %v", s, err)
	}
	return *u
}

func main() {
	dataDir := flag.String("data-dir", "", "data directory")
	name := flag.String("name", "default", "member name")
	client := flag.String("listen-client-urls", "http://127.0.0.1:2379", "client URL")
	advertise := flag.String("advertise-client-urls", "", "advertised client URL (default: the client URL)")
	peer := flag.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URL")
	initialPeer := flag.String("initial-advertise-peer-urls", "", "advertised peer URL (default: the peer URL)")
	cluster := flag.String("initial-cluster", "", "initial cluster (default: NAME=PEER)")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("--data-dir is required")
	}
	if *advertise == "" {
		advertise = client
	}
	if *initialPeer == "" {
		initialPeer = peer
	}
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{mustURL(*client)}
	cfg.AdvertiseClientUrls = []url.URL{mustURL(*advertise)}
	cfg.ListenPeerUrls = []url.URL{mustURL(*peer)}
	cfg.AdvertisePeerUrls = []url.URL{mustURL(*initialPeer)}
	if *cluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(*name)
	} else {
		cfg.InitialCluster = *cluster
	}
	cfg.LogLevel = "warn"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("etcd: %v", err)
	}
	defer e.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		log.Printf("etcd %s ready on %s", *name, *client)
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	case <-stop:
		return
	}
	select {
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	case <-stop:
	}
}
