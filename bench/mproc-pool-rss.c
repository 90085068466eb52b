/*
 * mproc-pool-rss - N tiny pool tasks (default 10 M), private RSS after the
 * first 10 k and after all of them: memory bounded by tasks in flight.
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static long rss_kib(void){ long size=0,res=0,shared=0; FILE*f=fopen("/proc/self/statm","r"); if(!f)return -1; if(fscanf(f,"%ld %ld %ld",&size,&res,&shared)!=3)res=shared=0; fclose(f); return (res-shared)*(sysconf(_SC_PAGESIZE)/1024);}
static int fn(const mproc_msg*t,mproc_msg*r,void*a){(void)t;(void)a;r->size=0;return 0;}
int main(int argc,char**argv){
	long n = argc>1?atol(argv[1]):10000000;
	mproc_pool *p; mproc_pool_opts o; memset(&o,0,sizeof o); o.workers=2; o.max_payload=64; o.queue_capacity=65536;
	if(mproc_pool_start(&p,fn,NULL,&o)) return 1;
	char b[8]={0}; long sent=0,got=0; long before=-1;
	while(got<n){
		while(sent<n && sent-got<200 && mproc_pool_submit(p,b,1,NULL,0)==0) sent++;
		mproc_result r; memset(&r,0,sizeof r);
		if(mproc_pool_result(p,&r,5000)==0) got++;
		if(got==10000 && before<0) before=rss_kib();
	}
	long after=rss_kib();
	printf("%ld tasks: private RSS %ld KiB after 10k, %ld KiB after all (grew %ld KiB)\n",n,before,after,after-before);
	mproc_pool_stop(p,5000,NULL,0); mproc_pool_free(p); return 0;
}
