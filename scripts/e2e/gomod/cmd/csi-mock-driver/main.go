// Command csi-mock-driver serves the Kubernetes project's in-memory CSI mock
// driver (k8s.io/kubernetes/test/e2e/storage/drivers/csi-test) on a unix
// socket, with command-line flags shaped like csi-driver-host-path's
// hostpathplugin (--endpoint, --nodeid, --drivername).
//
// It stands in for hostpathplugin in this project's end-to-end tests because
// github.com/kubernetes-csi/csi-driver-host-path is not served by the Go
// module proxy that this project's machines can reach. Volumes live in memory
// only: they are lost when the process exits.
//
// Every gRPC call is logged to stderr as one line
// `gRPCCall: {"Method":...,"Request":...,"Response":...,"Error":...}`
// (klog verbosity 3, the default here), so tests can see which CSI calls the
// provisioner made.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/driver"
	"k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service"
)

// nodeService answers NodeGetInfo with the --nodeid flag (the mock itself
// reports its driver name as the node ID).
type nodeService struct {
	service.Service
	nodeID string
}

func (n nodeService) NodeGetInfo(ctx context.Context, req *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	rsp, err := n.Service.NodeGetInfo(ctx, req)
	if err == nil && n.nodeID != "" {
		rsp.NodeId = n.nodeID
	}
	return rsp, err
}

func main() {
	endpoint := flag.String("endpoint", "unix:///csi/csi.sock", "CSI endpoint: unix://PATH (or tcp://HOST:PORT)")
	driverName := flag.String("drivername", "hostpath.csi.k8s.io", "name returned by GetPluginInfo")
	nodeID := flag.String("nodeid", "", "node ID returned by NodeGetInfo (default: the driver name)")
	enableTopology := flag.Bool("enable-topology", false, "advertise VOLUME_ACCESSIBILITY_CONSTRAINTS and the topology key "+service.TopologyKey)
	attachLimit := flag.Int64("attach-limit", 0, "maximum volumes per node reported by NodeGetInfo (0: unlimited)")
	disableAttach := flag.Bool("disable-attach", true, "do not advertise PUBLISH_UNPUBLISH_VOLUME (no ControllerPublish)")
	disableControllerExpansion := flag.Bool("disable-controller-expansion", false, "do not advertise EXPAND_VOLUME")
	nodeExpansionRequired := flag.Bool("node-expansion-required", false, "advertise node-side expansion")
	klog.InitFlags(nil)
	_ = flag.Set("v", "3")
	_ = flag.Set("logtostderr", "true")
	flag.Parse()

	network, address, ok := strings.Cut(*endpoint, "://")
	if !ok || (network != "unix" && network != "tcp") {
		fmt.Fprintf(os.Stderr, "csi-mock-driver: --endpoint must be unix://PATH or tcp://HOST:PORT, got %q\n", *endpoint)
		os.Exit(2)
	}
	if network == "unix" {
		if err := os.Remove(address); err != nil && !os.IsNotExist(err) {
			fmt.Fprintf(os.Stderr, "csi-mock-driver: remove stale socket %s: %v\n", address, err)
			os.Exit(1)
		}
	}
	listener, err := net.Listen(network, address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "csi-mock-driver: listen on %s: %v\n", *endpoint, err)
		os.Exit(1)
	}

	svc := service.New(service.Config{
		DriverName:                 *driverName,
		DisableAttach:              *disableAttach,
		AttachLimit:                *attachLimit,
		EnableTopology:             *enableTopology,
		DisableControllerExpansion: *disableControllerExpansion,
		NodeExpansionRequired:      *nodeExpansionRequired,
		PermissiveTargetPath:       true,
	})
	node := nodeService{Service: svc, nodeID: *nodeID}
	d := driver.NewCSIDriver(&driver.CSIDriverServers{Controller: svc, Identity: svc, Node: node})
	if err := d.Start(listener, nil); err != nil {
		fmt.Fprintf(os.Stderr, "csi-mock-driver: start gRPC server: %v\n", err)
		os.Exit(1)
	}
	klog.Infof("csi-mock-driver %s serving on %s", *driverName, *endpoint)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	sig := <-signals
	klog.Infof("csi-mock-driver: %v received, stopping", sig)
	d.Close()
	if network == "unix" {
		_ = os.Remove(address)
	}
	klog.Flush()
}
