namespace kipvs::agent {}
