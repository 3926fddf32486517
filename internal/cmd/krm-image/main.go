// Command krm-image builds krm-agent's container image without Docker and
// writes it as a tarball for `docker load -i` or `kind load image-archive`.
// `make image` builds the binary and calls it.
//
// The image's time is $SOURCE_DATE_EPOCH (seconds since the Unix epoch)
// when set, else the epoch itself: the same binary gives the same digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/krm-project/krm/internal/image"
)

const usage = `krm-image writes krm-agent's container image as a tarball for
docker load -i or kind load image-archive.

Usage:
  krm-image --binary PATH --output PATH [flags]

Environment:
  SOURCE_DATE_EPOCH  the image's time in seconds (default 0, the Unix epoch)

Flags:
`

func main() {
	fs := flag.NewFlagSet("krm-image", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var opts image.Options
	fs.StringVar(&opts.Binary, "binary", "", "krm-agent built for linux/--arch with CGO_ENABLED=0 (required)")
	fs.StringVar(&opts.Tag, "tag", image.DefaultTag, "name:tag of the image in the tarball")
	fs.StringVar(&opts.Arch, "arch", runtime.GOARCH, "GOARCH the binary was built for")
	fs.StringVar(&opts.Version, "version", image.DefaultVersion, "the image's version label")
	fs.StringVar(&opts.CABundle, "ca-bundle", image.DefaultCABundle, "PEM CA bundle to install in the image")
	output := fs.String("output", "", "path of the tarball to write (required)")
	if err := fs.Parse(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	} else if err != nil {
		os.Exit(2)
	}
	if err := run(opts, *output); err != nil {
		fmt.Fprintln(os.Stderr, "krm-image:", err)
		os.Exit(1)
	}
}

func run(opts image.Options, output string) error {
	if opts.Binary == "" || output == "" {
		return errors.New("--binary and --output are required")
	}
	if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since the Unix epoch", epoch)
		}
		opts.Created = time.Unix(sec, 0)
	}
	img, err := image.WriteTarball(output, opts)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fi, err := os.Stat(output)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s\n  tag    %s\n  digest %s\n  size   %d bytes (%.1f MiB)\n",
		output, opts.Tag, digest, fi.Size(), float64(fi.Size())/(1<<20))
	return nil
}
