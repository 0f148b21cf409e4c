// Command cairn is the cairn server: one member of a cairn cluster, serving
// etcd's v3 API. It takes etcd's flags, ETCD_* variables and config file.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/server"
	"github.com/cairn-kv/cairn/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := config.Parse(args, os.Environ())
	switch {
	case errors.Is(err, config.ErrHelp):
		fmt.Fprint(os.Stdout, config.Usage())
		return 0
	case errors.Is(err, config.ErrVersion):
		fmt.Printf("cairn Version: %s\netcd API Version: %s\netcd Version: %s\nGo Version: %s\nGo OS/Arch: %s/%s\n",
			version.Cairn, version.APIVersion, version.EtcdVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case err != nil:
		fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
		fmt.Fprintln(os.Stderr, "Try 'cairn --help' for more information.")
		return 2
	}
	lg, err := cfg.BuildLogger()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
		return 2
	}
	defer lg.Sync()
	for _, w := range cfg.Warnings {
		lg.Warn(w)
	}
	lg.Info("starting cairn",
		zap.String("cairn-version", version.Cairn),
		zap.String("etcd-version", version.EtcdVersion),
		zap.String("name", cfg.Name),
		zap.String("data-dir", cfg.MemberDataDir()),
		zap.String("go-version", runtime.Version()))

	srv, err := server.New(cfg, lg)
	if err != nil {
		lg.Error("failed to start member", zap.String("data-dir", cfg.MemberDataDir()), zap.Error(err))
		fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sv, err := srv.Serve(ctx)
	if err != nil {
		srv.Stop()
		lg.Error("failed to serve", zap.Error(err))
		fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		lg.Info("received signal; shutting down")
	case err := <-srv.Fatal():
		lg.Error("member failed", zap.Error(err))
		code = 1
	case err := <-sv.Err():
		lg.Error("serving failed", zap.Error(err))
		code = 1
	}
	sv.Close()
	srv.Stop()
	lg.Info("stopped cairn")
	return code
}
