// Command cnitool drives CNI plugins through libcni exactly as container
// runtimes (containerd, CRI-O) do: AddNetworkList / CheckNetworkList /
// DelNetworkList, capability args and the libcni result cache. It is used
// by the natra integration tests.
//
// Build offline (GOPATH mode, Debian golang-github-appc-cni-dev), from any cwd:
//
//	tests/cnitool/build.sh OUTPUT_PATH
//
// which runs, with the source symlinked into a temporary GOPATH:
//
//	GO111MODULE=off GOFLAGS= GOPATH=$TMP:/usr/share/gocode go build -o OUTPUT_PATH cnitool
//
// Usage:
//
//	cnitool <add|check|del|version> --conf FILE --netns PATH --id CONTAINERID [--ifname eth0]
//	        [--bandwidth JSON] [--annotations JSON] [--cni-path DIR1:DIR2] [--cache-dir DIR]
//	        [--plugin TYPE] [--pod-namespace NS] [--pod-name NAME]
//
// stdout carries exactly one JSON document: the ADD result, {"ok":true},
// the version info, or an error {"code":N,"msg":"...","details":"..."}
// (exit status 1). Diagnostics go to stderr.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

const usage = "usage: cnitool <add|check|del|version> --conf FILE --netns PATH --id CONTAINERID " +
	"[--ifname eth0] [--bandwidth JSON] [--annotations JSON] [--cni-path DIR1:DIR2] " +
	"[--cache-dir DIR] [--plugin TYPE] [--pod-namespace NS] [--pod-name NAME]"

type errOut struct {
	Code    uint    `json:"code"`
	Msg     string  `json:"msg"`
	Details *string `json:"details,omitempty"`
}

func main() {
	out, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "cnitool:", err)
		e := errOut{Msg: err.Error()}
		var cniErr *types.Error
		if errors.As(err, &cniErr) {
			e = errOut{Code: cniErr.Code, Msg: cniErr.Msg, Details: &cniErr.Details}
		}
		out = e
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if merr := enc.Encode(out); merr != nil {
		fmt.Fprintln(os.Stderr, "cnitool: encode output:", merr)
		os.Exit(1)
	}
	if err != nil {
		os.Exit(1)
	}
}

func run(args []string) (interface{}, error) {
	if len(args) < 1 {
		return nil, errors.New(usage)
	}
	cmd := args[0]
	switch cmd {
	case "add", "check", "del", "version":
	default:
		return nil, fmt.Errorf("unknown command %q; %s", cmd, usage)
	}
	fs := flag.NewFlagSet("cnitool", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	conf := fs.String("conf", "", "network configuration list (.conflist) or single .conf file")
	netns := fs.String("netns", "", "network namespace path (may be empty for del)")
	id := fs.String("id", "", "container ID")
	ifname := fs.String("ifname", "eth0", "interface name inside the container")
	bandwidth := fs.String("bandwidth", "", "bandwidth capability args as JSON")
	annotations := fs.String("annotations", "", "pod annotations capability args as JSON object of strings")
	cniPath := fs.String("cni-path", "/usr/lib/cni", "colon-separated plugin search path")
	cacheDir := fs.String("cache-dir", "", "libcni cache dir (default /var/lib/cni)")
	plugin := fs.String("plugin", "", "plugin type (for version)")
	podNS := fs.String("pod-namespace", "", "K8S_POD_NAMESPACE CNI_ARG")
	podName := fs.String("pod-name", "", "K8S_POD_NAME CNI_ARG")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(*cniPath, ":"), *cacheDir, nil)

	if cmd == "version" {
		if *plugin == "" {
			return nil, errors.New("version requires --plugin TYPE")
		}
		info, err := cni.GetVersionInfo(ctx, *plugin)
		if err != nil {
			return nil, err
		}
		return map[string]interface{}{"supportedVersions": info.SupportedVersions()}, nil
	}

	if *conf == "" || *id == "" {
		return nil, errors.New("--conf and --id are required")
	}
	list, err := loadConfList(*conf)
	if err != nil {
		return nil, err
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    *id,
		NetNS:          *netns,
		IfName:         *ifname,
		CapabilityArgs: map[string]interface{}{},
	}
	if *podNS != "" || *podName != "" {
		// As containerd/CRI-O do, so plugins without K8S_* args accept them.
		rt.Args = append(rt.Args, [2]string{"IgnoreUnknown", "1"})
	}
	if *podNS != "" {
		rt.Args = append(rt.Args, [2]string{"K8S_POD_NAMESPACE", *podNS})
	}
	if *podName != "" {
		rt.Args = append(rt.Args, [2]string{"K8S_POD_NAME", *podName})
	}
	if *bandwidth != "" {
		bw := map[string]interface{}{}
		dec := json.NewDecoder(strings.NewReader(*bandwidth))
		dec.UseNumber() // keep large integers (e.g. 4294967295) exact
		if err := dec.Decode(&bw); err != nil {
			return nil, fmt.Errorf("--bandwidth: %w", err)
		}
		rt.CapabilityArgs["bandwidth"] = bw
	}
	if *annotations != "" {
		ann := map[string]string{}
		if err := json.Unmarshal([]byte(*annotations), &ann); err != nil {
			return nil, fmt.Errorf("--annotations: %w", err)
		}
		rt.CapabilityArgs["io.kubernetes.cri.pod-annotations"] = ann
	}

	switch cmd {
	case "add":
		if *netns == "" {
			return nil, errors.New("add requires --netns")
		}
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return nil, err
		}
		if res == nil {
			return nil, errors.New("plugin chain returned no result")
		}
		if conv, cerr := res.GetAsVersion(list.CNIVersion); cerr == nil {
			res = conv
		} else {
			fmt.Fprintln(os.Stderr, "cnitool: cannot convert result:", cerr)
		}
		return res, nil
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			return nil, err
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			return nil, err
		}
	}
	return map[string]bool{"ok": true}, nil
}

// loadConfList reads a .conflist, or a single .conf wrapped into a list.
func loadConfList(path string) (*libcni.NetworkConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var probe map[string]json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&probe); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, ok := probe["plugins"]; ok {
		return libcni.ConfListFromFile(path)
	}
	single, err := libcni.ConfFromFile(path)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(single)
}
