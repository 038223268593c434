mod lab_c09_c14;
