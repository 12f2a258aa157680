// Command csi-driver is the CSI test driver of Sluice's end-to-end cluster, and
// the one stand-in left in it: the role csi-driver-host-path plays for
// VolSync's tests, which the Go module proxy here does not serve.
//
// Volumes are directories (Filesystem mode) or sparse image files attached
// to loop devices (Block mode) under -root. The driver serves the CSI
// Identity, Controller (snapshots) and Node (publish/unpublish) services on
// -csi-socket to the real kubelet and the real csi-snapshotter sidecar. The
// module proxy refuses external-provisioner and node-driver-registrar too,
// so the driver also does their jobs: it registers itself with the kubelet
// through the plugin-registration socket, and it provisions PersistentVolumes
// for PVCs of its StorageClasses (empty, cloned from a PVC, or restored from
// a VolumeSnapshot) and deletes released ones.
//
// It runs as a host process of the test harness, as root, like a node
// plugin's privileged container would.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/client-go/tools/clientcmd"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// config is what the harness passes on the command line.
type config struct {
	name            string
	root            string
	csiSocket       string
	registrationDir string
	nodeName        string
	kubeconfig      string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.name, "name", "e2e.sluice.dev", "the driver's CSI name (and its StorageClasses' provisioner)")
	flag.StringVar(&cfg.root, "root", "", "directory that holds the volumes and snapshots")
	flag.StringVar(&cfg.csiSocket, "csi-socket", "", "unix socket to serve CSI on")
	flag.StringVar(&cfg.registrationDir, "registration-dir", "", "the kubelet's plugins_registry directory")
	flag.StringVar(&cfg.nodeName, "node", "", "name of the Node this driver serves")
	flag.StringVar(&cfg.kubeconfig, "kubeconfig", "", "kubeconfig of the provisioner's API client")
	flag.Parse()
	for flagName, value := range map[string]string{
		"root": cfg.root, "csi-socket": cfg.csiSocket, "registration-dir": cfg.registrationDir,
		"node": cfg.nodeName, "kubeconfig": cfg.kubeconfig,
	} {
		if value == "" {
			log.Fatalf("-%s is required", flagName)
		}
	}
	if err := run(cfg); err != nil {
		log.Fatalf("csi-driver: %v", err)
	}
}

func run(cfg config) error {
	store, err := openStore(cfg.root)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	csiServer := grpc.NewServer(grpc.UnaryInterceptor(logErrors))
	csi.RegisterIdentityServer(csiServer, identity{name: cfg.name})
	csi.RegisterControllerServer(csiServer, &controller{store: store})
	csi.RegisterNodeServer(csiServer, &node{store: store, nodeName: cfg.nodeName})
	if err := serve(csiServer, cfg.csiSocket); err != nil {
		return err
	}
	defer csiServer.Stop()

	// The kubelet finds plugins by the sockets in its registration
	// directory and asks each for its name and CSI endpoint.
	registrationServer := grpc.NewServer()
	registerapi.RegisterRegistrationServer(registrationServer, &registration{cfg: cfg})
	registrationSocket := filepath.Join(cfg.registrationDir, cfg.name+"-reg.sock")
	if err := serve(registrationServer, registrationSocket); err != nil {
		return err
	}
	defer registrationServer.Stop()

	restConfig, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return fmt.Errorf("cannot load kubeconfig %s: %w", cfg.kubeconfig, err)
	}
	provisioner, err := newProvisioner(restConfig, cfg, store)
	if err != nil {
		return err
	}
	log.Printf("serving %s on %s, registered through %s", cfg.name, cfg.csiSocket, registrationSocket)
	provisioner.run(ctx)
	return nil
}

// serve listens on a fresh unix socket at path and serves server on it in
// the background.
func serve(server *grpc.Server, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("cannot remove the stale socket %s: %w", path, err)
	}
	listener, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", path, err)
	}
	go func() {
		if err := server.Serve(listener); err != nil {
			log.Printf("server on %s stopped: %v", path, err)
		}
	}()
	return nil
}

// logErrors logs every failed call, so a test's failure shows the driver's
// side of it in the driver's log.
func logErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		log.Printf("%s failed: %v", info.FullMethod, err)
	}
	return resp, err
}

// registration answers the kubelet's plugin watcher.
type registration struct {
	registerapi.UnimplementedRegistrationServer
	cfg config
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.cfg.name,
		Endpoint:          r.cfg.csiSocket,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registration) NotifyRegistrationStatus(_ context.Context, status *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if status.PluginRegistered {
		log.Printf("registered with the kubelet")
	} else {
		log.Printf("the kubelet refused the registration: %s", status.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
