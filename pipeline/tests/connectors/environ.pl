#!/usr/bin/perl
# Prints the environment it was started with on stderr, one `NAME=VALUE` a line, the value's
# bytes reversed and hex-encoded (the driver redacts the bundle's values from stderr, in the
# forms a careless program prints them in; the test wants them as given), then writes empty
# outputs. Perl rather than a shell, which adds variables of its own (PWD) to what it shows; and
# a confined connector cannot read /proc/self/environ.
use strict;
use warnings;
my %arg = @ARGV;
print STDERR "$_=", unpack("H*", scalar reverse $ENV{$_}), "\n" for sort keys %ENV;
for (["--category-results-out", "{}"], ["--graph-json", '{"entities": []}']) {
    my ($flag, $content) = @$_;
    open(my $out, ">", $arg{$flag}) or die "$flag: $!";
    print $out $content;
    close($out) or die "$flag: $!";
}
