//! The configuration files of the node's kubelet and kube-proxy, from
//! what the harness knows about the node.
//!
//! The settings that matter here, beyond pointing every directory at the
//! node's own:
//! - cgroup v1 with the cgroupfs driver (`failCgroupV1: false`), and a
//!   `cgroupRoot` of the harness' own, so every container is found and
//!   killed with the node;
//! - the kubelet serves on the bridge address (the API server reaches it
//!   there for `kubectl logs`), authenticates callers by client
//!   certificates of the cluster's CA, and authenticates to the API server
//!   as `system:node:NAME`, so the Node authorizer and NodeRestriction
//!   apply as in production;
//! - eviction and image garbage collection are off (every threshold 0%):
//!   a test machine's disk may be nearly full of other things (a CI run
//!   once had 0.25% free and the kubelet evicted the operator), and every
//!   image is imported, none can be pulled again;
//! - Pods get an empty resolv.conf: there is no DNS to reach.
//! - kube-proxy uses iptables and publishes NodePorts on the bridge address
//!   only; it leaves conntrack sysctls as they are.

use std::net::IpAddr;
use std::path::Path;

/// What both configuration files need.
#[derive(Debug)]
pub struct NodeConfig<'a> {
    pub node_name: &'a str,
    pub address: IpAddr,
    pub kubelet_port: u16,
    pub kubelet_healthz_port: u16,
    pub proxy_healthz_port: u16,
    pub proxy_metrics_port: u16,
    pub client_ca: &'a Path,
    pub serving_cert: &'a Path,
    pub serving_key: &'a Path,
    pub runtime_socket: &'a Path,
    pub cgroup_root: &'a str,
    pub pod_logs_dir: &'a Path,
    pub resolv_conf: &'a Path,
    pub pod_subnet: &'a str,
    pub proxy_kubeconfig: &'a Path,
}

/// The kubelet's `KubeletConfiguration`.
pub fn kubelet_config(c: &NodeConfig) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
tlsCertFile: {cert}
tlsPrivateKeyFile: {key}
containerRuntimeEndpoint: unix://{runtime}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
podLogsDir: {logs}
resolvConf: {resolv}
evictionHard:
  memory.available: 0%
  nodefs.available: 0%
  nodefs.inodesFree: 0%
  imagefs.available: 0%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
",
        address = c.address,
        port = c.kubelet_port,
        healthz = c.kubelet_healthz_port,
        ca = c.client_ca.display(),
        cert = c.serving_cert.display(),
        key = c.serving_key.display(),
        runtime = c.runtime_socket.display(),
        cgroup_root = c.cgroup_root,
        logs = c.pod_logs_dir.display(),
        resolv = c.resolv_conf.display(),
    )
}

/// kube-proxy's `KubeProxyConfiguration`.
pub fn proxy_config(c: &NodeConfig) -> String {
    format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {node}
mode: iptables
clusterCIDR: {pods}
nodePortAddresses: [{address}/32]
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
  syncPeriod: 30s
  minSyncPeriod: 1s
",
        kubeconfig = c.proxy_kubeconfig.display(),
        node = c.node_name,
        pods = c.pod_subnet,
        address = c.address,
        healthz = c.proxy_healthz_port,
        metrics = c.proxy_metrics_port,
    )
}

/// The CNI network of the node's Pods: the test's bridge, addresses from
/// its subnet, and routes only to that subnet and the Service range, so a
/// Pod has no way to any other network. The bridge plugin is not the
/// gateway, so it neither assigns the bridge's address (the harness did)
/// nor turns on IP forwarding, and nothing is masqueraded.
pub fn cni_conflist(
    network: &str,
    bridge: &str,
    subnet: &str,
    gateway: IpAddr,
    service_subnet: &str,
    ipam_dir: &Path,
) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": false,
            "isDefaultGateway": false,
            "ipMasq": false,
            "hairpinMode": false,
            "ipam": {
                "type": "host-local",
                "dataDir": ipam_dir,
                "ranges": [[{"subnet": subnet, "gateway": gateway.to_string()}]],
                "routes": [{"dst": service_subnet, "gw": gateway.to_string()}],
            },
        }],
    })
    .to_string()
}
